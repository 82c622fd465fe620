package main

// Exception is a genreport test a forwarder cannot pass, and why.
type Exception struct {
	Reason string
}

// Exceptions lists the genreport tests AppFence fails by design. Each is
// explained in docs/conformance.md; TestExceptionsDocumented keeps the two
// in step.
var Exceptions = map[string]Exception{
	"dnswkk": {Reason: "AppFence has no TSIG keys: NOTAUTH with TSIG error BADKEY (RFC 8945 5.2.2); passing needs ISC's well-known key, which no RFC defines"},
}
