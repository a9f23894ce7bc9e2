// Command identity serves Lethe's identity service over gRPC.
package main

import (
	"lethe.dev/platform/app"
	"lethe.dev/services/identity"
)

func main() { app.Main("identity", &identity.Config{}, identity.Build) }
