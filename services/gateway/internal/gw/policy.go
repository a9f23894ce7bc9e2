// Package gw is the gateway: JSON/REST in front of every Lethe gRPC service, with
// authentication against identity's JWKS, per-route authorization, limits and errors in
// one JSON shape.
package gw

import (
	"google.golang.org/protobuf/reflect/protoregistry"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/authz"
)

// The route policy is not a list kept here: each RPC declares its access with the
// lethe.auth.v1.access option, and Routes reads it, with the HTTP binding, from the
// registered descriptors (platform/authz). Backends enforce the same option.

// Routes returns every HTTP route the gateway serves, each with its RPC's access.
func Routes() []authz.Route {
	// The generated packages register their descriptors; name them so the registry holds
	// them however the gateway is linked.
	_ = []any{fulfillmentv1.File_lethe_fulfillment_v1_fulfillment_proto, identityv1.File_lethe_identity_v1_identity_proto,
		preferencesv1.File_lethe_preferences_v1_preferences_proto, sharingv1.File_lethe_sharing_v1_sharing_proto}
	return authz.Routes(protoregistry.GlobalFiles)
}
