// Command sharing serves Lethe's third-party sharing service over gRPC and runs its
// advance-notice worker.
package main

import (
	"lethe.dev/platform/app"
	"lethe.dev/services/sharing"
)

func main() { app.Main("sharing", &sharing.Config{}, sharing.Build) }
