package resolver

import (
	"errors"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/resolver/upstream"
)

// Fair shares of the upstream places (issue 17): a query whose client, or
// whose zone, has its share of upstream queries in flight is answered
// SERVFAIL at once, with an EDE saying why, and counted in
// appfence_upstream_shed_total. The shares are upstream.Shares, kept by
// the handler across reloads; their bounds are read from each query's
// state, so a reload changes them.

// shareLimits returns the shares of st's config.
func shareLimits(st *State) upstream.ShareLimits {
	u := st.Policy.Config.Upstream
	return upstream.ShareLimits{PerClient: u.MaxInFlightPerClient, PerZone: u.MaxInFlightPerZone}
}

// shed counts and logs (at most once a minute) a query shed by its share,
// err being its *upstream.ShedError.
func (h *Handler) shed(err error) {
	var se *upstream.ShedError
	if !errors.As(err, &se) {
		return
	}
	if h.metrics != nil {
		h.metrics.UpstreamShed.WithLabelValues(se.Reason).Inc()
	}
	now := time.Now().UnixNano()
	last := h.shedLogged.Load()
	if now-last < int64(time.Minute) || !h.shedLogged.CompareAndSwap(last, now) {
		return
	}
	h.log.Warn("a client or zone has its share of upstream queries in flight: answering SERVFAIL to more",
		"reason", se.Reason, "zone", se.Zone, "limit", se.Limit)
}

// shedEDE returns the extended error of a SERVFAIL caused by err: EDE 0
// "Other" with the share that was full when err is an *upstream.ShedError
// (RFC 8914 has no code for load shedding), else nil.
func shedEDE(err error) *dns.EDNS0_EDE {
	var se *upstream.ShedError
	if !errors.As(err, &se) {
		return nil
	}
	text := "upstream share full: client"
	if se.Reason == upstream.ShedZone {
		text = "upstream share full: zone " + se.Zone
	}
	return &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeOther, ExtraText: text}
}
