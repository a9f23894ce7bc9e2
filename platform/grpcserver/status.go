package grpcserver

import (
	"context"
	"errors"
	"net"
	"os"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"lethe.dev/platform/errs"
)

// ErrorDomain is the ErrorInfo domain of every Lethe error (AIP-193).
const ErrorDomain = "lethe.dev"

var codeMap = map[errs.Code]codes.Code{
	errs.Internal:           codes.Internal,
	errs.InvalidArgument:    codes.InvalidArgument,
	errs.NotFound:           codes.NotFound,
	errs.AlreadyExists:      codes.AlreadyExists,
	errs.FailedPrecondition: codes.FailedPrecondition,
	errs.PermissionDenied:   codes.PermissionDenied,
	errs.Unauthenticated:    codes.Unauthenticated,
	errs.ResourceExhausted:  codes.ResourceExhausted,
	errs.Aborted:            codes.Aborted,
	errs.Unavailable:        codes.Unavailable,
	errs.DeadlineExceeded:   codes.DeadlineExceeded,
}

// Status converts any error into a gRPC status per AIP-193: a canonical code, one
// ErrorInfo with an UPPER_SNAKE reason, and for INVALID_ARGUMENT a BadRequest with field
// violations. Errors that are not *errs.Error become INTERNAL with a generic message,
// so a driver error carrying a value can never reach a caller.
func Status(err error) *status.Status {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok && !isDomain(err) {
		return s // already a status (e.g. from a downstream call)
	}
	var e *errs.Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, context.Canceled):
		e = errs.New(errs.Aborted, "CANCELLED", "the request was cancelled")
		return withInfo(status.New(codes.Canceled, e.Message), e)
	case errors.Is(err, context.DeadlineExceeded):
		e = errs.New(errs.DeadlineExceeded, "DEADLINE_EXCEEDED", "the request deadline passed")
	case isTimeout(err):
		// A backend (the database, another service) did not answer in time: nothing is
		// wrong with the request, and calls are idempotent, so it is worth another try.
		e = errs.New(errs.Unavailable, "BACKEND_TIMEOUT", "a backend did not answer in time; retry")
	default:
		e = errs.New(errs.Internal, "INTERNAL", "internal error")
	}
	return withInfo(status.New(codeMap[e.Code], e.Message), e)
}

// isTimeout reports whether err is a network timeout (a connection's deadline passed).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func isDomain(err error) bool {
	var e *errs.Error
	return errors.As(err, &e)
}

func withInfo(s *status.Status, e *errs.Error) *status.Status {
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: e.Reason, Domain: ErrorDomain, Metadata: e.Metadata}}
	if len(e.Violations) > 0 {
		br := &errdetails.BadRequest{}
		for _, v := range e.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		details = append(details, br)
	}
	out, err := s.WithDetails(details...)
	if err != nil {
		return s
	}
	return out
}
