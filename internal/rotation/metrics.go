package rotation

// The rotation's metrics, as the report step writes them (CloudWatch
// embedded metric format) and the CDK construct's dashboard and alarms read
// them: part of the product's interface, like the tags.

// MetricsNamespace is the CloudWatch namespace of amirotate's metrics, and
// MetricsDimension their one dimension (the policy's name).
const (
	MetricsNamespace = "amirotate"
	MetricsDimension = "Policy"
)

// Metric names, one per line of a rotation's summary that an operator
// watches; the CDK construct's dashboard and alarms use the same names.
const (
	MetricInstancesTargeted = "InstancesTargeted"
	MetricImagesCreated     = "ImagesCreated"
	MetricImagesFailed      = "ImagesFailed"
	MetricCopiesCreated     = "CopiesCreated"
	MetricCopiesFailed      = "CopiesFailed"
	MetricImagesDeleted     = "ImagesDeleted"
	MetricSnapshotsDeleted  = "SnapshotsDeleted"
	// MetricSnapshotBytesFreed: the volume size of the deleted images all of
	// whose snapshots went, in bytes (an upper bound: EBS stores snapshots
	// incrementally).
	MetricSnapshotBytesFreed = "SnapshotBytesFreed"
	MetricRotationDuration   = "RotationDuration"
)
