// Package errs is Lethe's one domain error type. Services return *Error values with a
// Code and an UPPER_SNAKE Reason; only the transport edge (grpcserver) turns them into a
// gRPC status with AIP-193 details. Messages must never contain personal data: they are
// returned to callers and written to logs.
package errs

import (
	"errors"
	"fmt"
)

// Code is a canonical error class, mirroring gRPC codes that Lethe uses.
type Code int

// The codes a domain error can carry.
const (
	Internal Code = iota
	InvalidArgument
	NotFound
	AlreadyExists
	FailedPrecondition
	PermissionDenied
	Unauthenticated
	ResourceExhausted
	Aborted
	Unavailable
	DeadlineExceeded
)

// FieldViolation names a bad request field (a proto field path such as
// "member.email") and says what is wrong with it, without echoing its value.
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a domain error.
type Error struct {
	Code       Code
	Reason     string // UPPER_SNAKE, stable, e.g. "MEMBER_NOT_FOUND"
	Message    string // for developers; never personal data
	Violations []FieldViolation
	Metadata   map[string]string // opaque ids only
	Err        error             // cause, kept for errors.Is/As; not shown to callers
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Reason, e.Message, e.Err)
	}
	return e.Reason + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an error with a code, reason and message.
func New(code Code, reason, message string) *Error {
	return &Error{Code: code, Reason: reason, Message: message}
}

// Wrap returns an error with a code and reason that keeps err as its cause.
func Wrap(err error, code Code, reason, message string) *Error {
	return &Error{Code: code, Reason: reason, Message: message, Err: err}
}

// Invalid returns an INVALID_ARGUMENT error listing field violations.
func Invalid(violations ...FieldViolation) *Error {
	return &Error{Code: InvalidArgument, Reason: "INVALID_ARGUMENT", Message: "the request has invalid fields", Violations: violations}
}

// NotFoundf returns a NOT_FOUND error for a kind of resource; the message names the
// kind, never the identifier, because identifiers can be personal data (emails).
func NotFoundf(reason, kind string) *Error {
	return &Error{Code: NotFound, Reason: reason, Message: kind + " not found"}
}

// With adds metadata (opaque ids only) and returns e.
func (e *Error) With(key, value string) *Error {
	if e.Metadata == nil {
		e.Metadata = map[string]string{}
	}
	e.Metadata[key] = value
	return e
}

// CodeOf returns the code of the first *Error in err's chain, or Internal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// ReasonOf returns the reason of the first *Error in err's chain, or "".
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Violations collects field violations; its Err returns nil when there are none, so a
// validator can add as it goes and return v.Err() at the end.
type Violations []FieldViolation

// Add records a violation.
func (v *Violations) Add(field, description string) {
	*v = append(*v, FieldViolation{Field: field, Description: description})
}

// Err returns an INVALID_ARGUMENT error, or nil when nothing was added.
func (v Violations) Err() error {
	if len(v) == 0 {
		return nil
	}
	return Invalid(v...)
}
