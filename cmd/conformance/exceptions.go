package main

// Exception is a genreport test a forwarder cannot pass, and why.
type Exception struct {
	Reason string
}

// Exceptions lists the genreport tests AppFence fails by design. Each is
// explained in docs/conformance.md; TestExceptionsDocumented keeps the two
// in step.
var Exceptions = map[string]Exception{}
