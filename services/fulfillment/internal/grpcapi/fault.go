package grpcapi

// fault is called after each step of intake. It does nothing, except in test builds with
// the lethe_faults tag, where it kills the process at the step named by
// LETHE_FAULT_INTAKE (fault_inject.go), to prove a retry converges from every crash point.
var fault = func(step string) {}
