package steps

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
)

// What retention reads and does to retire expired images other accounts
// may use (see rotation/retire.go): their launch permissions, EC2's image
// usage reports, and, when the plan says so, removing the permissions,
// deprecating and requesting a report. Reports are made asynchronously;
// no invocation waits for one: a later rotation reads it.

const (
	// usageChunk is DescribeImageUsageReports' and
	// DescribeImageUsageReportEntries' limit on ImageId.N and ReportId.N.
	usageChunk = 200
	// usageVersionDepth: how many versions of each launch template a report
	// checks (EC2's default is the 20 most recent; at most 10000). An Auto
	// Scaling group may pin an old version.
	usageVersionDepth = "10000"
)

// launchPermissionsOf reads an image's launch permissions as the planner
// sees them: account ids, organization and OU ARNs, "all".
func launchPermissionsOf(ctx context.Context, cl ec2x.RetentionEC2, id string) (*rotation.Sharing, error) {
	out, err := cl.DescribeImageAttribute(ctx, &ec2.DescribeImageAttributeInput{
		ImageId: aws.String(id), Attribute: types.ImageAttributeNameLaunchPermission,
	})
	if err != nil {
		return nil, fmt.Errorf("reading the launch permissions of %s: %w", id, err)
	}
	s := &rotation.Sharing{Targets: []string{}}
	for _, lp := range out.LaunchPermissions {
		switch {
		case lp.UserId != nil:
			s.Targets = append(s.Targets, *lp.UserId)
		case lp.OrganizationArn != nil:
			s.Targets = append(s.Targets, *lp.OrganizationArn)
		case lp.OrganizationalUnitArn != nil:
			s.Targets = append(s.Targets, *lp.OrganizationalUnitArn)
		case lp.Group != "":
			s.Targets = append(s.Targets, string(lp.Group))
		}
	}
	slices.Sort(s.Targets)
	return s, nil
}

// usageReports reads the usage reports of images and the entries of the
// available ones. An image whose reports could not be read gets the error
// instead: the planner keeps it.
func (r *Retention) usageReports(ctx context.Context, cl ec2x.RetentionEC2, ids []string) (map[string][]rotation.UsageReport, map[string]string) {
	reports := map[string][]rotation.UsageReport{}
	failed := map[string]string{}
	for chunk := range slices.Chunk(ids, usageChunk) {
		got, err := r.usageChunk(ctx, cl, chunk)
		for _, id := range chunk {
			if err != nil {
				failed[id] = err.Error()
				continue
			}
			reports[id] = got[id]
			if reports[id] == nil {
				reports[id] = []rotation.UsageReport{}
			}
		}
	}
	return reports, failed
}

func (r *Retention) usageChunk(ctx context.Context, cl ec2x.RetentionEC2, ids []string) (map[string][]rotation.UsageReport, error) {
	byImage := map[string][]rotation.UsageReport{}
	var available []string
	p := ec2.NewDescribeImageUsageReportsPaginator(cl, &ec2.DescribeImageUsageReportsInput{ImageIds: ids, MaxResults: r.limit(0)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing image usage reports: %w", err)
		}
		for _, rep := range page.ImageUsageReports {
			ur := rotation.UsageReport{
				ID:         aws.ToString(rep.ReportId),
				ImageID:    aws.ToString(rep.ImageId),
				State:      aws.ToString(rep.State),
				Reason:     aws.ToString(rep.StateReason),
				Created:    aws.ToTime(rep.CreationTime),
				AccountIDs: rep.AccountIds,
			}
			for _, t := range rep.ResourceTypes {
				ur.ResourceTypes = append(ur.ResourceTypes, aws.ToString(t.ResourceType))
			}
			byImage[ur.ImageID] = append(byImage[ur.ImageID], ur)
			if ur.State == "available" {
				available = append(available, ur.ID)
			}
		}
	}
	for chunk := range slices.Chunk(available, usageChunk) {
		ep := ec2.NewDescribeImageUsageReportEntriesPaginator(cl, &ec2.DescribeImageUsageReportEntriesInput{ReportIds: chunk, MaxResults: r.limit(0)})
		for ep.HasMorePages() {
			page, err := ep.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("listing image usage report entries: %w", err)
			}
			for _, e := range page.ImageUsageReportEntries {
				entry := rotation.UsageEntry{
					ReportID:     aws.ToString(e.ReportId),
					ImageID:      aws.ToString(e.ImageId),
					AccountID:    aws.ToString(e.AccountId),
					ResourceType: aws.ToString(e.ResourceType),
					Count:        aws.ToInt64(e.UsageCount),
				}
				// An entry goes with its report; one that names no report of
				// its image goes with all of them (the planner counts it).
				reps := byImage[entry.ImageID]
				i := slices.IndexFunc(reps, func(ur rotation.UsageReport) bool { return ur.ID == entry.ReportID })
				for j := range reps {
					if i < 0 || j == i {
						reps[j].Entries = append(reps[j].Entries, entry)
					}
				}
			}
		}
	}
	return byImage, nil
}

// retireImage does what the plan says to retire a kept image: deprecate it,
// then remove its launch permissions (and the accounts' create-volume
// permissions on its snapshots), request a usage report. It returns what
// failed, or "".
func (r *Retention) retireImage(ctx context.Context, cl ec2x.RetentionEC2, region, rotationID string, d rotation.Decision, snapshots []string, policy string) string {
	var problems []string
	// Deprecation first: its time is the only record of when sharing
	// stopped, from which the grace period counts. Without it, the
	// permissions stay and the next run tries again.
	deprecated := true
	if !d.DeprecateAt.IsZero() {
		// EC2 takes only a future time: the next minute of the step's clock
		// (the plan's time is the rotation's, minutes earlier).
		at := r.now().Add(time.Minute).Truncate(time.Minute)
		_, err := cl.EnableImageDeprecation(ctx, &ec2.EnableImageDeprecationInput{ImageId: aws.String(d.ImageID), DeprecateAt: aws.Time(at)})
		audit(ctx, "EnableImageDeprecation", region, []string{d.ImageID}, "retention: deprecate before deletion at "+at.Format(time.RFC3339), err)
		if err != nil {
			problems = append(problems, "deprecating: "+err.Error())
			deprecated = false
		}
	}
	if len(d.Unshare) > 0 && !deprecated {
		problems = append(problems, "launch permissions left in place until it is deprecated")
	}
	if len(d.Unshare) > 0 && deprecated {
		var perms []types.LaunchPermission
		var accounts []string
		for _, t := range d.Unshare {
			switch {
			case t == rotation.PublicShare:
				perms = append(perms, types.LaunchPermission{Group: types.PermissionGroupAll})
			case strings.Contains(t, ":organization/"):
				perms = append(perms, types.LaunchPermission{OrganizationArn: aws.String(t)})
			case strings.Contains(t, ":ou/"):
				perms = append(perms, types.LaunchPermission{OrganizationalUnitArn: aws.String(t)})
			default:
				perms = append(perms, types.LaunchPermission{UserId: aws.String(t)})
				accounts = append(accounts, t)
			}
		}
		_, err := cl.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
			ImageId: aws.String(d.ImageID), LaunchPermission: &types.LaunchPermissionModifications{Remove: perms},
		})
		audit(ctx, "ModifyImageAttribute", region, []string{d.ImageID}, "retention: stop sharing before deletion: "+strings.Join(d.Unshare, ", "), err)
		if err != nil {
			problems = append(problems, "removing launch permissions: "+err.Error())
		}
		for _, sn := range snapshots {
			if len(accounts) == 0 {
				break
			}
			_, err := cl.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{
				SnapshotId: aws.String(sn), Attribute: types.SnapshotAttributeNameCreateVolumePermission,
				OperationType: types.OperationTypeRemove, UserIds: accounts,
			})
			audit(ctx, "ModifySnapshotAttribute", region, []string{sn}, fmt.Sprintf("retention: stop sharing snapshot of %s", d.ImageID), err)
			if err != nil && !ec2x.IsNotFound(err) {
				problems = append(problems, fmt.Sprintf("unsharing snapshot %s: %v", sn, err))
			}
		}
	}
	if d.RequestUsageReport {
		out, err := cl.CreateImageUsageReport(ctx, &ec2.CreateImageUsageReportInput{
			ImageId: aws.String(d.ImageID),
			ResourceTypes: []types.ImageUsageResourceTypeRequest{
				{ResourceType: aws.String(rotation.UsageInstance)},
				{ResourceType: aws.String(rotation.UsageLaunchTemplate), ResourceTypeOptions: []types.ImageUsageResourceTypeOptionRequest{
					{OptionName: aws.String("version-depth"), OptionValues: []string{usageVersionDepth}},
				}},
			},
			// One report per image and rotation: a retried step asks again
			// and gets the same report.
			ClientToken: aws.String(rotationID + "-" + d.ImageID),
			TagSpecifications: []types.TagSpecification{{
				ResourceType: types.ResourceTypeImageUsageReport,
				Tags:         ec2x.Tags(map[string]string{rotation.TagPolicy: policy, rotation.TagCreatedBy: rotation.CreatedBy}),
			}},
		})
		id := ""
		if out != nil {
			id = aws.ToString(out.ReportId)
		}
		audit(ctx, "CreateImageUsageReport", region, []string{d.ImageID, id}, "retention: does another account use it?", err)
		if err != nil {
			problems = append(problems, "requesting a usage report: "+err.Error())
		}
	}
	return strings.Join(problems, "; ")
}
