// Command fulfillment serves Lethe's request fulfillment service over gRPC, runs its
// Temporal worker, and serves signed archive downloads over HTTP.
package main

import (
	"lethe.dev/platform/app"
	"lethe.dev/services/fulfillment"
)

func main() { app.Main("fulfillment", &fulfillment.Config{}, fulfillment.Build) }
