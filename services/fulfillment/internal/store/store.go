// Package store holds fulfillment's schema migrations (goose, SQL both engines accept).
package store

import (
	"embed"
	"io/fs"
)

//go:embed migrations/*.sql
var embedded embed.FS

// Migrations is the goose migration directory.
var Migrations, _ = fs.Sub(embedded, "migrations")
