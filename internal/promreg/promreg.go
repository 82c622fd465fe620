// Package promreg registers Prometheus collectors the way the packages
// that declare their own (resolver/cache, resolver/upstream) need: on a
// registerer passed in, several times over the process's life (a router
// per reload) without failing.
//
// It imports only the Prometheus client: every package may import it.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg and returns it, or the collector of the same
// description registered before it: a second router or cache on the same
// registry counts on the same series. It panics when reg holds another
// collector of the name, of another kind or labels, as MustRegister does:
// a programming error.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(C); ok {
				return old
			}
		}
		panic(err)
	}
	return c
}
