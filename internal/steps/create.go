package steps

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/amirotate/amirotate/internal/ec2x"
)

// createOrAdopt makes an image under its deterministic name with create
// (CreateImage or CopyImage), or adopts the one an earlier attempt of the
// same rotation made: when EC2 answers that the name is taken, the image of
// that name is read and adopted only if ours accepts it (else its error is
// returned: the name belongs to something amirotate did not make). adopted
// is the image read when it was adopted, nil when create made a new one.
func createOrAdopt(ctx context.Context, client ec2.DescribeImagesAPIClient, region, name string,
	create func() (string, error), ours func(types.Image) error) (id string, adopted *types.Image, err error) {
	id, err = create()
	if err == nil || !ec2x.IsNameTaken(err) {
		return id, nil, err
	}
	img, found, err := imageByName(ctx, client, name)
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("finding image %s in %s, which already exists: %w", name, region, err)
	case !found:
		// EC2 knows the name but does not list the image yet.
		return "", nil, ec2x.RetryableError{Code: ec2x.CodeNameTaken,
			Message: fmt.Sprintf("image %s exists in %s but is not listed yet", name, region)}
	}
	if err := ours(img); err != nil {
		return "", nil, err
	}
	return aws.ToString(img.ImageId), &img, nil
}
