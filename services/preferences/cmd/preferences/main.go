// Command preferences serves Lethe's preferences service over gRPC.
package main

import (
	"lethe.dev/platform/app"
	"lethe.dev/services/preferences"
)

func main() { app.Main("preferences", &preferences.Config{}, preferences.Build) }
