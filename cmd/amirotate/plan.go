package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/amirotate/amirotate/internal/ec2x"
	"github.com/amirotate/amirotate/internal/steps"
)

const planUsage = "Usage: amirotate plan --policy FILE [--json FILE]\n\n" +
	"Lists the policy's images in each of its regions with their rotation, age, state,\n" +
	"size, what uses them and what the next rotation's retention does with each (keep or\n" +
	"delete, and why), and the images that carry the policy's tags without being provably\n" +
	"its own. It only reads: nothing in the account changes.\n\n"

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", stderr, planUsage)
	policyFile := fs.String("policy", "", "policy `file` (JSON)")
	jsonFile := fs.String("json", "", "also write the inventory as JSON to `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see amirotate plan -h)", fs.Arg(0))
	}
	if *policyFile == "" {
		return errors.New("--policy is required: the policy file whose images to list (see amirotate plan -h)")
	}
	policy, err := loadPolicy(*policyFile)
	if err != nil {
		return err
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading the AWS configuration: %w", err)
	}
	clients := ec2x.NewClients(cfg)
	if err := ec2x.CheckAccess(ctx, clients); err != nil {
		return err
	}
	inv, err := steps.NewInspect(clients, steps.Env{}).Inventory(ctx, policy, time.Now())
	if err != nil {
		return err
	}
	printInventory(stdout, inv)
	if *jsonFile != "" {
		return writeJSON(*jsonFile, inv)
	}
	return nil
}

// printInventory writes the inventory as tables: the policy's images, then
// the look-alikes.
func printInventory(w io.Writer, inv steps.Inventory) {
	t := inv.Totals
	fmt.Fprintf(w, "Policy %q at %s: %d images, %d GiB of volumes\n", inv.Policy, inv.At.Format(time.RFC3339), t.Images, t.SizeGiB)
	fmt.Fprintf(w, "The next rotation deletes %d images with %d snapshots (%d GiB)\n", t.ImagesDeleted, t.SnapshotsDeleted, t.GiBFreed)
	fmt.Fprintf(w, "Snapshot storage of the next rotation: %s\n\n", costText(t.Cost))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  INSTANCE\tREGION\tIMAGE\tROTATION\tAGE\tSTATE\tSIZE\tSNAPSHOTS\tUSED BY\tNEXT ROTATION")
	for _, im := range inv.Images {
		image := im.ImageID
		if im.Copy {
			image += " (copy)"
		}
		decision := "keep: " + im.Reason
		if im.Delete {
			decision = "DELETE: " + im.Reason
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.1fd\t%s\t%d GiB\t%s\t%s\t%s\n", im.InstanceID, im.Region, image, dash(im.Rotation),
			im.AgeDays, im.State, im.SizeGiB, dash(strings.Join(im.Snapshots, ",")), dash(strings.Join(im.References, "; ")), decision)
	}
	tw.Flush()
	if len(inv.LookAlikes) == 0 {
		return
	}
	fmt.Fprintf(w, "\nLook-alikes: %d images with the policy's tags that are not provably its own (never touched)\n\n", len(inv.LookAlikes))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  REGION\tIMAGE\tNAME\tSTATE\tWHY")
	for _, im := range inv.LookAlikes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", im.Region, im.ImageID, dash(im.Name), im.State, im.Reason)
	}
	tw.Flush()
}
