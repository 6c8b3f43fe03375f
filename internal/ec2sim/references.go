package ec2sim

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// DescribeImageReferences: which instances, launch templates and SSM
// parameters of the region use an image. Instances match on their image
// (option state-name narrows the states; default all, including terminated
// ones while they are still visible); launch templates on the most recent
// version-depth versions (default 10) and, always, the default version;
// SSM parameters on a value equal to the image id.

var imageReferenceTypes = set("ec2:Instance", "ec2:LaunchTemplate", "ssm:Parameter",
	"imagebuilder:ImageRecipe", "imagebuilder:ContainerRecipe")

type imageRef struct {
	imageID string
	rtype   string
	arn     string
}

func (s *Sim) describeImageReferences(c *call) *apiError {
	p := c.p
	ids := p.list("ImageId")
	if len(ids) == 0 {
		return errMissing("ImageId")
	}
	all, err := p.boolean("IncludeAllResourceTypes")
	if err != nil {
		return err
	}
	limit, err := p.pageLimit(5, 1000, true)
	if err != nil {
		return err
	}
	types := map[string]bool{}
	states := map[string]bool{}
	depth := 10
	for _, n := range p.indexes("ResourceType") {
		pre := member("ResourceType", n)
		rt := p.str(pre + "ResourceType")
		if !imageReferenceTypes[rt] {
			return errInvalidValue("Value (%s) for parameter ResourceType is invalid. Valid values: ec2:Instance, ec2:LaunchTemplate, ssm:Parameter, imagebuilder:ImageRecipe, imagebuilder:ContainerRecipe.", rt)
		}
		types[rt] = true
		for _, m := range p.indexes(pre + "ResourceTypeOption") {
			opre := member(pre+"ResourceTypeOption", m)
			name := p.str(opre + "OptionName")
			vals := p.list(opre + "OptionValue")
			switch {
			case name == "state-name" && rt == "ec2:Instance":
				for _, v := range vals {
					if _, ok := instanceStateCodes[v]; !ok {
						return errInvalidValue("Value (%s) for option state-name is invalid.", v)
					}
					states[v] = true
				}
			case name == "version-depth" && rt == "ec2:LaunchTemplate":
				if len(vals) != 1 {
					return errInvalidValue("Option version-depth takes exactly one value.")
				}
				d, err := strconv.Atoi(vals[0])
				if err != nil || d < 1 || d > 10000 {
					return errInvalidValue("Value (%s) for option version-depth is invalid. Valid values: integers between 1 and 10000.", vals[0])
				}
				depth = d
			default:
				return errInvalidValue("Option %s is not valid for resource type %s.", name, rt)
			}
		}
	}
	if all {
		for rt := range imageReferenceTypes {
			types[rt] = true
		}
	}
	if len(types) == 0 {
		return errorf("MissingParameter", "Either IncludeAllResourceTypes or ResourceTypes must be specified.")
	}
	wanted := map[string]bool{}
	var order []string
	for _, id := range ids {
		if _, err := c.r.imageByID(id, c.now); err != nil {
			return err
		}
		if !wanted[id] {
			wanted[id] = true
			order = append(order, id)
		}
	}
	byImage := map[string][]imageRef{}
	acct := AccountID
	if types["ec2:Instance"] {
		for _, in := range c.r.instanceList {
			in.refresh(c.now)
			if !wanted[in.imageID] || in.gone(c.now) || len(states) > 0 && !states[in.state] {
				continue
			}
			byImage[in.imageID] = append(byImage[in.imageID], imageRef{imageID: in.imageID, rtype: "ec2:Instance",
				arn: "arn:aws:ec2:" + c.r.name + ":" + acct + ":instance/" + in.id})
		}
	}
	if types["ec2:LaunchTemplate"] {
		for _, lt := range c.r.templateList {
			hit := map[string]bool{}
			check := func(v *ltVersion) {
				if id := v.data.str("ImageId"); wanted[id] {
					hit[id] = true
				}
			}
			for i := len(lt.versions) - 1; i >= 0 && i >= len(lt.versions)-depth; i-- {
				check(lt.versions[i])
			}
			check(lt.versions[lt.defaultVersion-1])
			for _, id := range order {
				if hit[id] {
					byImage[id] = append(byImage[id], imageRef{imageID: id, rtype: "ec2:LaunchTemplate",
						arn: "arn:aws:ec2:" + c.r.name + ":" + acct + ":launch-template/" + lt.id})
				}
			}
		}
	}
	if types["ssm:Parameter"] {
		for _, name := range slices.Sorted(maps.Keys(c.r.params)) {
			prm := c.r.params[name]
			if wanted[prm.value] {
				byImage[prm.value] = append(byImage[prm.value], imageRef{imageID: prm.value, rtype: "ssm:Parameter",
					arn: "arn:aws:ssm:" + c.r.name + ":" + acct + ":parameter/" + strings.TrimPrefix(name, "/")})
			}
		}
	}
	var rows []imageRef
	for _, id := range order {
		rows = append(rows, byImage[id]...)
	}
	page, next, err := paginateList(rows, func(imageRef) bool { return true }, "refs", p.str("NextToken"), limit)
	if err != nil {
		return err
	}
	w := c.w
	xmlList(w, "imageReferenceSet", page, func(r imageRef) {
		w.el("imageId", r.imageID)
		w.el("resourceType", r.rtype)
		w.el("arn", r.arn)
	})
	w.opt("nextToken", next)
	return nil
}
