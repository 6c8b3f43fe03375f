package steps

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
)

// deleteEC2 is what deleting images and snapshots calls; the poll and
// retention roles both grant it.
type deleteEC2 interface {
	DeregisterImage(ctx context.Context, params *ec2.DeregisterImageInput, optFns ...func(*ec2.Options)) (*ec2.DeregisterImageOutput, error)
	DeleteSnapshot(ctx context.Context, params *ec2.DeleteSnapshotInput, optFns ...func(*ec2.Options)) (*ec2.DeleteSnapshotOutput, error)
}

// deletion is what deleteImage or deleteSnapshots did, per image and
// snapshot. Every path that deletes (poll's failed images, retention, the
// orphan sweep) goes through them and reads this.
type deletion struct {
	// err: deregistering the image failed, so none of its snapshots was
	// touched (EC2 refuses to delete a snapshot a registered image uses).
	err error
	// deleted are the snapshots this call deleted; gone those already
	// deleted before it (an earlier attempt's work).
	deleted, gone []string
	// inUse: snapshot → why it stays (another image still uses it).
	inUse map[string]string
	// failed: snapshot → the error deleting it.
	failed map[string]string
}

// deleteImage deregisters an image and deletes its snapshots. snapshots
// are the ids read from the image before (those no other image uses):
// DeregisterImage with DeleteAssociatedSnapshots deletes them in the same
// call, and any it does not report deleted is deleted explicitly. An image
// already gone is success: its snapshots are what is left to do.
// region and reason are for the audit log.
func deleteImage(ctx context.Context, client deleteEC2, region, imageID string, snapshots []string, reason string) deletion {
	out, err := client.DeregisterImage(ctx, &ec2.DeregisterImageInput{
		ImageId:                   aws.String(imageID),
		DeleteAssociatedSnapshots: aws.Bool(true),
	})
	audit(ctx, "DeregisterImage", region, []string{imageID}, reason, err)
	var d deletion
	switch {
	case err == nil:
	case ec2x.IsNotFound(err):
		out = nil
	default:
		d.err = fmt.Errorf("deregistering %s: %w", imageID, err)
		return d
	}
	deletedWithImage := map[string]bool{}
	if out != nil {
		for _, rc := range out.DeleteSnapshotResults {
			if rc.ReturnCode == types.SnapshotReturnCodesSuccess {
				deletedWithImage[aws.ToString(rc.SnapshotId)] = true
			}
		}
	}
	var rest []string
	for _, id := range snapshots {
		if deletedWithImage[id] {
			d.deleted = append(d.deleted, id)
		} else {
			rest = append(rest, id)
		}
	}
	deleteSnapshots(ctx, client, region, rest, "snapshot of "+imageID+": "+reason, &d)
	return d
}

// deleteSnapshots deletes snapshots one by one into d: NotFound is gone
// already, InUse is kept with EC2's reason, anything else failed.
func deleteSnapshots(ctx context.Context, client deleteEC2, region string, ids []string, reason string, d *deletion) {
	for _, id := range ids {
		_, err := client.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		audit(ctx, "DeleteSnapshot", region, []string{id}, reason, err)
		switch {
		case err == nil:
			d.deleted = append(d.deleted, id)
		case ec2x.IsNotFound(err):
			d.gone = append(d.gone, id)
		case ec2x.IsSnapshotInUse(err):
			setReason(&d.inUse, id, "still used by another image: "+ec2x.Message(err))
		default:
			setReason(&d.failed, id, err.Error())
		}
	}
}

// setReason records why k was kept or failed, making the map on first use.
func setReason(m *map[string]string, k, v string) {
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
}
