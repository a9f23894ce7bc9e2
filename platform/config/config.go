// Package config reads service configuration from flags whose defaults come from
// environment variables, with loopback defaults, and validates it at start-up with
// errors that say what to set.
package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env returns the value of key, or def when it is unset or empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// EnvDuration returns key parsed as a duration, or def.
func EnvDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

// EnvInt returns key parsed as an int, or def.
func EnvInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
	}
	return def
}

// EnvBool returns key parsed as a bool, or def.
func EnvBool(key string, def bool) bool {
	if b, err := strconv.ParseBool(os.Getenv(key)); err == nil {
		return b
	}
	return def
}

// Problems collects configuration errors so start-up can report all of them at once.
type Problems []string

// Require records a problem when value is empty.
func (p *Problems) Require(value, flag, env string) {
	if strings.TrimSpace(value) == "" {
		*p = append(*p, fmt.Sprintf("set -%s or %s", flag, env))
	}
}

// Check records a problem when ok is false.
func (p *Problems) Check(ok bool, format string, args ...any) {
	if !ok {
		*p = append(*p, fmt.Sprintf(format, args...))
	}
}

// Err returns the collected problems as one error, or nil.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("configuration: %s", strings.Join(p, "; "))
}
