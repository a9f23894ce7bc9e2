// Package drp is the Data Rights Protocol v1.0 as a covered business: authorized
// agents and their tokens, the signed-message validation chain in the protocol's order,
// replay protection, DRP requests and their statuses, and the status callbacks workflow.
// The HTTP endpoints live in the gateway (services/gateway/internal/drp); filing the
// privacy requests is fulfillment's intake (internal/grpcapi).
package drp

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"lethe.dev/platform/errs"
)

// Version is the protocol version agents must send in drp.version.
const Version = "1.0"

// MaxLifetime is the longest a signed body may be valid (expires-at after now); the
// replay table keeps each accepted body until it expires, so this bounds it.
const MaxLifetime = 24 * time.Hour

// Exercises are the rights this business supports.
var Exercises = map[string]bool{"sale:opt-out": true, "sale:opt-in": true, "deletion": true, "access": true}

// Status values and reasons, as the protocol names them.
const (
	StatusOpen       = "open"
	StatusInProgress = "in_progress"
	StatusFulfilled  = "fulfilled"
	StatusRevoked    = "revoked"
	StatusDenied     = "denied"
	StatusExpired    = "expired"

	ReasonNeedUserVerification = "need_user_verification"
	ReasonInsufVerification    = "insuf_verification"
	ReasonNoMatch              = "no_match"
	ReasonTooManyRequests      = "too_many_requests"
	ReasonOther                = "other"
)

// IsFinal reports whether a status ends a request.
func IsFinal(status string) bool {
	switch status {
	case StatusFulfilled, StatusRevoked, StatusDenied, StatusExpired:
		return true
	}
	return false
}

var agentIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidAgentID reports whether id is a well-formed agent-id.
func ValidAgentID(id string) bool { return agentIDPattern.MatchString(id) }

// Request is the signed JSON of a data rights request (and, with only the first five
// fields, of the pair-wise key setup). Claims are used to match the member and are not
// stored.
type Request struct {
	AgentID        string `json:"agent-id"`
	BusinessID     string `json:"business-id"`
	IssuedAt       string `json:"issued-at"`
	ExpiresAt      string `json:"expires-at"`
	Version        string `json:"drp.version"`
	Exercise       string `json:"exercise"`
	Regime         string `json:"regime"`
	AgentRequestID string `json:"agent-request-id"`
	StatusCallback string `json:"status_callback"`
	Name           string `json:"name"`
	Email          string `json:"email"`
	EmailVerified  bool   `json:"email_verified"`
	PhoneNumber    string `json:"phone_number"`
}

// Failure is a step of the validation chain that failed; Message says which, without
// any content of the body.
type Failure struct {
	Step    string
	Message string
	// Fatal is false only when the same body may succeed later (not yet valid).
	Fatal bool
}

// Error returns the failure as a PERMISSION_DENIED error; the gateway renders it.
func (f Failure) Error() *errs.Error {
	e := errs.New(errs.PermissionDenied, "DRP_"+strings.ToUpper(f.Step), f.Message)
	if f.Fatal {
		e.With("fatal", "true")
	}
	return e
}

// Open decodes a signed body (base64 of a 64-byte Ed25519 signature ‖ message,
// libsodium's combined mode) and verifies it with key. It returns the message.
func Open(body string, key ed25519.PublicKey) ([]byte, *Failure) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(body))
	if err != nil {
		if raw, err = base64.URLEncoding.DecodeString(strings.TrimSpace(body)); err != nil {
			return nil, &Failure{"decode", "the body is not base64 of a signed message", true}
		}
	}
	if len(raw) < ed25519.SignatureSize || len(key) != ed25519.PublicKeySize {
		return nil, &Failure{"signature", "the signature does not verify with the agent's key", true}
	}
	sig, msg := raw[:ed25519.SignatureSize], raw[ed25519.SignatureSize:]
	if !ed25519.Verify(key, msg, sig) {
		return nil, &Failure{"signature", "the signature does not verify with the agent's key", true}
	}
	return msg, nil
}

// Check runs the rest of the chain on a verified message, in the protocol's order:
// agent-id is the token's (or the path's) agent, business-id is ours, now is after
// issued-at and before expires-at. It returns the parsed request and its expiry.
func Check(msg []byte, agentID, businessID string, now time.Time) (*Request, time.Time, *Failure) {
	var r Request
	if err := json.Unmarshal(msg, &r); err != nil {
		return nil, time.Time{}, &Failure{"json", "the signed message is not a JSON object", true}
	}
	if r.AgentID != agentID {
		return nil, time.Time{}, &Failure{"agent", "agent-id is not the agent of the bearer token", true}
	}
	if r.BusinessID != businessID {
		return nil, time.Time{}, &Failure{"business", "business-id is not this business", true}
	}
	issued, err := parseTime(r.IssuedAt)
	if err != nil {
		return nil, time.Time{}, &Failure{"issued_at", "issued-at is not an ISO 8601 time", true}
	}
	if !now.After(issued) {
		return nil, time.Time{}, &Failure{"not_yet_valid", "the request is not valid yet: issued-at is in the future", false}
	}
	expires, err := parseTime(r.ExpiresAt)
	if err != nil {
		return nil, time.Time{}, &Failure{"expires_at", "expires-at is not an ISO 8601 time", true}
	}
	if !now.Before(expires) {
		return nil, time.Time{}, &Failure{"expired", "the request expired: expires-at has passed", true}
	}
	if expires.Sub(now) > MaxLifetime {
		return nil, time.Time{}, &Failure{"lifetime", "expires-at is more than a day away; keep signed requests short-lived", true}
	}
	return &r, expires, nil
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Parse(time.RFC3339, s)
}

// ValidCallback reports whether a status_callback may be called: HTTPS, or HTTP to a
// loopback address (development and tests).
func ValidCallback(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || len(raw) > 2000 {
		return false
	}
	switch u.Scheme {
	case "https":
		return true
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return true
		}
		ip := net.ParseIP(host)
		return ip != nil && ip.IsLoopback()
	}
	return false
}
