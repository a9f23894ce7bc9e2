// Package authz makes the lethe.auth.v1.access method option the one source of who may
// call what: it checks that every Lethe RPC declares it, derives the gateway's HTTP
// routes (with their access) from the registered descriptors, and enforces it in every
// backend with one gRPC interceptor that reads the caller the gateway vouches for from
// the call's metadata. Operator calls that touch member data or change the system are
// appended to the audit log.
package authz

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	authv1 "lethe.dev/gen/lethe/auth/v1"
)

// Of returns an RPC's declared access (ACCESS_UNSPECIFIED when it declares none).
func Of(md protoreflect.MethodDescriptor) authv1.Access {
	opts := md.Options()
	if opts == nil || !proto.HasExtension(opts, authv1.E_Access) {
		return authv1.Access_ACCESS_UNSPECIFIED
	}
	a, _ := proto.GetExtension(opts, authv1.E_Access).(authv1.Access)
	return a
}

// inScope reports whether a file defines Lethe service APIs.
func inScope(fd protoreflect.FileDescriptor) bool {
	pkg := string(fd.Package())
	return strings.HasPrefix(pkg, "lethe.") && !strings.HasPrefix(pkg, "lethe.privacy.") && !strings.HasPrefix(pkg, "lethe.auth.")
}

// Methods calls fn for every RPC of every Lethe service in files.
func Methods(files *protoregistry.Files, fn func(protoreflect.MethodDescriptor)) {
	files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if !inScope(f) {
			return true
		}
		for i := range f.Services().Len() {
			ms := f.Services().Get(i).Methods()
			for j := range ms.Len() {
				fn(ms.Get(j))
			}
		}
		return true
	})
}

// Check returns one problem per Lethe RPC without a valid (lethe.auth.v1.access)
// option, sorted; CI fails on any.
func Check(files *protoregistry.Files) []string {
	var out []string
	Methods(files, func(md protoreflect.MethodDescriptor) {
		a := Of(md)
		if _, known := authv1.Access_name[int32(a)]; !known || a == authv1.Access_ACCESS_UNSPECIFIED {
			out = append(out, fmt.Sprintf("%s: no (lethe.auth.v1.access) option", md.FullName()))
		}
	})
	slices.Sort(out)
	return out
}

// FullMethod is the gRPC method name of md, "/pkg.Service/Method".
func FullMethod(md protoreflect.MethodDescriptor) string {
	return "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
}

// Lookup finds the descriptor of a gRPC full method name in files.
func Lookup(files *protoregistry.Files, fullMethod string) protoreflect.MethodDescriptor {
	name := strings.Replace(strings.TrimPrefix(fullMethod, "/"), "/", ".", 1)
	d, err := files.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil
	}
	md, _ := d.(protoreflect.MethodDescriptor)
	return md
}
