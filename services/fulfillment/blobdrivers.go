package fulfillment

// CloudBlobTags are the build tags that link the cloud object-store drivers for
// FULFILLMENT_ARCHIVE_BUCKET (lethe_s3: s3://, lethe_gcs: gs://, lethe_azblob: azblob://).
// They are opt-in because each SDK costs resident memory in every process, used or not
// (together ~19 MiB of fulfillment's RSS at start-up, mostly code and descriptors their
// packages touch as they initialize): a deployment links the one store it uses.
// deploy/service.Dockerfile links all three unless told otherwise.
const CloudBlobTags = "lethe_s3,lethe_gcs,lethe_azblob"
