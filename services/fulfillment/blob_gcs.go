//go:build lethe_gcs

package fulfillment

import _ "gocloud.dev/blob/gcsblob" // gs:// archive storage shared by every replica
