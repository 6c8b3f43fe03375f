package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/rotation"
	"github.com/amirotate/amirotate/internal/steps"
)

const rollbackUsage = "Usage: amirotate rollback --policy FILE --instance ID [--region R]... [--to IMAGE] [--dry-run] [--json FILE] [--audit FILE]\n" +
	"       amirotate rollback --clear --policy FILE --instance ID [--region R]... [--dry-run]\n\n" +
	"Puts the instance's consumers back on its previous available image (or IMAGE, one of\n" +
	"its own amirotate images), in every region of the policy or those named: the policy's\n" +
	"SSM parameter, the default version of the launch templates tracking the instance and\n" +
	"amirotate:latest. The images rolled back from are marked " + rotation.TagRolledBack + ": no\n" +
	"rotation publishes them again, and retention keeps them and the image rolled back to,\n" +
	"until --clear lifts the mark. A second run changes nothing.\n\n"

// regionList collects repeated --region flags.
type regionList []string

func (r *regionList) String() string { return strings.Join(*r, ",") }
func (r *regionList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*r = append(*r, s)
		}
	}
	return nil
}

func runRollback(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rollback", stderr, rollbackUsage)
	policyFile := fs.String("policy", "", "policy `file` (JSON)")
	instance := fs.String("instance", "", "the `instance` whose images to roll back")
	var regions regionList
	fs.Var(&regions, "region", "roll back only this `region` (repeatable; default: every region of the policy)")
	to := fs.String("to", "", "roll back to this `image` (default: the previous available one)")
	dryRun := fs.Bool("dry-run", false, "print what would change, change nothing")
	clear := fs.Bool("clear", false, "lift the instance's "+rotation.TagRolledBack+" marks instead")
	jsonFile := fs.String("json", "", "also write the result as JSON to `file`")
	auditFile := fs.String("audit", "", "append the audit log (one JSON line per change) to `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q (see amirotate rollback -h)", fs.Arg(0))
	case *policyFile == "":
		return errors.New("--policy is required: the policy file of the instance's images (see amirotate rollback -h)")
	case *instance == "":
		return errors.New("--instance is required: the instance whose images to roll back (see amirotate rollback -h)")
	case *clear && *to != "":
		return errors.New("--clear lifts the marks and takes no --to")
	}
	policy, err := loadPolicy(*policyFile)
	if err != nil {
		return err
	}
	clients, err := checkedClients(ctx)
	if err != nil {
		return err
	}
	var auditLog io.Writer
	if *auditFile != "" {
		f, err := os.OpenFile(*auditFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("the audit log: %w", err)
		}
		defer f.Close()
		auditLog = f
	}
	// The publish function's identity: against the local endpoint the
	// simulator authorizes the calls as its role, which grants rollback's.
	rb := steps.NewRollback(clients.As(ec2x.StepPublish), steps.Env{Policies: rotation.PinPolicies(policy), Audit: auditLogger(auditLog)})
	out, err := rb.Handle(ctx, steps.RollbackIn{Policy: policy, InstanceID: *instance, Regions: regions, To: *to, DryRun: *dryRun, Clear: *clear})
	if err != nil {
		return err
	}
	printRollback(stdout, out)
	if *jsonFile != "" {
		if err := writeJSON(*jsonFile, out); err != nil {
			return err
		}
	}
	if out.Failed {
		return errors.New("the rollback did not finish in every region (see ERROR above); run it again once the cause is fixed: what is done stays done")
	}
	return nil
}

// printRollback writes the rollback as a table, one row per region.
func printRollback(w io.Writer, out steps.RollbackOut) {
	verb := map[bool]string{true: "would change", false: "changed"}[out.DryRun]
	if out.Clear {
		fmt.Fprintf(w, "Lifting the %s marks of %s (policy %q)", rotation.TagRolledBack, out.InstanceID, out.Policy)
	} else {
		fmt.Fprintf(w, "Rollback of %s (policy %q) to rotation %s", out.InstanceID, out.Policy, out.ToRotation)
	}
	switch {
	case out.DryRun:
		fmt.Fprint(w, ": dry run, nothing changed\n\n")
	case !out.Changed:
		fmt.Fprint(w, ": already in place, nothing changed\n\n")
	default:
		fmt.Fprint(w, "\n\n")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if out.Clear {
		fmt.Fprintln(tw, "  REGION\tMARK LIFTED FROM\tCHANGE")
		for _, r := range out.Regions {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.Region, dash(strings.Join(r.Cleared, ", ")), change(r, verb))
		}
		tw.Flush()
		return
	}
	fmt.Fprintln(tw, "  REGION\tROLL BACK TO\tMARKED ROLLED BACK\tSSM PARAMETER\tLAUNCH TEMPLATES\tLATEST FROM\tCHANGE")
	for _, r := range out.Regions {
		param, templates := "-", "-"
		if p := r.Published; p != nil {
			param = dash(p.SSMParameter)
			var lts []string
			for _, lt := range p.LaunchTemplates {
				if lt.Version == 0 {
					lts = append(lts, lt.ID)
				} else {
					lts = append(lts, fmt.Sprintf("%s v%d", lt.ID, lt.Version))
				}
			}
			templates = dash(strings.Join(lts, ", "))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Region, dash(r.ImageID), dash(strings.Join(r.Marked, ", ")), param, templates,
			dash(strings.Join(r.LatestFrom, ", ")), change(r, verb))
	}
	tw.Flush()
}

func change(r steps.RollbackRegion, verb string) string {
	errs := []string{}
	if r.Error != "" {
		errs = append(errs, r.Error)
	}
	if r.Published != nil && r.Published.Error != "" {
		errs = append(errs, r.Published.Error)
	}
	switch {
	case len(errs) > 0:
		return "ERROR: " + strings.Join(errs, "; ")
	case r.Changed:
		return verb
	default:
		return "none"
	}
}
