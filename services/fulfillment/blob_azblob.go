//go:build lethe_azblob

package fulfillment

import _ "gocloud.dev/blob/azureblob" // azblob:// archive storage shared by every replica
