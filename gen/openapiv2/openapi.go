// Package openapiv2 embeds the OpenAPI v2 document that protoc-gen-openapiv2 generates
// from the protos next to this file, so the gateway can serve the exact spec it was
// built with. This file is the only hand-written file under gen/.
package openapiv2

import _ "embed"

// Spec is the merged OpenAPI v2 (Swagger) document of every Lethe HTTP route.
//
//go:embed lethe.swagger.json
var Spec []byte
