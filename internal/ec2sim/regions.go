package ec2sim

func (s *Sim) describeRegions(c *call) *apiError {
	fs, err := c.p.filters(set("region-name", "endpoint", "opt-in-status"), false)
	if err != nil {
		return err
	}
	names := c.p.list("RegionName")
	want := set(names...)
	for _, n := range names {
		if _, ok := s.regions[n]; !ok {
			return errorf("InvalidParameterValue", "Invalid region: %s", n)
		}
	}
	var out []string
	for _, n := range s.regionNames {
		if len(want) > 0 && !want[n] {
			continue
		}
		ok := matchFilters(fs, func(f string) []string {
			switch f {
			case "region-name":
				return []string{n}
			case "endpoint":
				return []string{"ec2." + n + ".amazonaws.com"}
			case "opt-in-status":
				return []string{"opt-in-not-required"}
			}
			return nil
		})
		if ok {
			out = append(out, n)
		}
	}
	xmlList(c.w, "regionInfo", out, func(n string) {
		c.w.el("regionName", n)
		c.w.el("regionEndpoint", "ec2."+n+".amazonaws.com")
		c.w.el("optInStatus", "opt-in-not-required")
	})
	return nil
}

func (s *Sim) describeAvailabilityZones(c *call) *apiError {
	zones := []string{c.r.name + "a", c.r.name + "b", c.r.name + "c"}
	xmlList(c.w, "availabilityZoneInfo", zones, func(z string) {
		c.w.el("zoneName", z)
		c.w.el("zoneState", "available")
		c.w.el("regionName", c.r.name)
		// min: a configured region name may be shorter than three characters.
		c.w.el("zoneId", z[:min(3, len(z))]+"-az"+string(z[len(z)-1]-'a'+'1'))
		c.w.el("zoneType", "availability-zone")
		c.w.el("optInStatus", "opt-in-not-required")
	})
	return nil
}

func (s *Sim) describeAccountAttributes(c *call) *apiError {
	attrs := [][2]string{{"supported-platforms", "VPC"}, {"default-vpc", "vpc-default"}, {"max-instances", "1000"}}
	xmlList(c.w, "accountAttributeSet", attrs, func(a [2]string) {
		c.w.el("attributeName", a[0])
		c.w.open("attributeValueSet")
		c.w.open("item")
		c.w.el("attributeValue", a[1])
		c.w.close("item")
		c.w.close("attributeValueSet")
	})
	return nil
}
