//go:build lethe_s3

package fulfillment

import _ "gocloud.dev/blob/s3blob" // s3:// archive storage shared by every replica
