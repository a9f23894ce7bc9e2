package grpcserver

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// reasonOf returns the ErrorInfo reason of a status, or "".
func reasonOf(s *status.Status) string {
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// ReasonOf returns the ErrorInfo reason carried by a gRPC error, or "". Clients use it to
// branch on stable reasons instead of messages.
func ReasonOf(err error) string {
	return reasonOf(status.Convert(err))
}
