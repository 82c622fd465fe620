package main

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/synthetic"
)

func TestCheck(t *testing.T) {
	answer := func(q question, rcode int, rrs ...string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.Rcode = rcode
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		return m
	}
	a := question{"N1.soak.test.", dns.TypeA}
	right := "N1.soak.test. 5 IN A " + synthetic.AddrOf("n1.soak.test.", false).String()
	tests := []struct {
		q      question
		exempt bool
		resp   *dns.Msg
		want   string
	}{
		{a, false, answer(a, dns.RcodeSuccess, right), ""},
		{a, false, answer(a, dns.RcodeSuccess, "N1.soak.test. 5 IN A 192.0.2.1"), "answer-wrong"},
		{a, false, answer(a, dns.RcodeSuccess, "n1.soak.test. 5 IN A "+synthetic.AddrOf("n1.soak.test.", false).String()), "case-wrong"},
		{a, false, answer(a, dns.RcodeServerFailure), "servfail"},
		{question{"www.tiktok.com.", dns.TypeA}, false, answer(a, dns.RcodeNameError), ""},
		{question{"www.tiktok.com.", dns.TypeA}, false, answer(a, dns.RcodeSuccess, "www.tiktok.com. 5 IN A 192.0.2.1"), "block-wrong"},
		{question{"www.tiktok.com.", dns.TypeA}, true, answer(a, dns.RcodeSuccess, "www.tiktok.com. 5 IN A "+synthetic.AddrOf("www.tiktok.com.", false).String()), ""},
		{question{"nx1.soak.test.", dns.TypeAAAA}, false, answer(a, dns.RcodeNameError), ""},
		{question{"nx1.soak.test.", dns.TypeAAAA}, false, answer(a, dns.RcodeSuccess), "rcode-wrong"},
	}
	for i, tt := range tests {
		if got := check(tt.q, tt.exempt, tt.resp); got != tt.want {
			t.Errorf("%d: check(%v) = %q, want %q", i, tt.q, got, tt.want)
		}
	}
}

func TestInOutage(t *testing.T) {
	base := time.Now()
	tl := newTally()
	tl.setOutage(outage{from: base, to: base.Add(10 * time.Second)}, 0)
	tests := []struct {
		from, to time.Duration
		want     bool
	}{
		{-2 * time.Second, -time.Second, false},
		{-time.Second, time.Second, true},
		{5 * time.Second, 5 * time.Second, true},
		{12 * time.Second, 12 * time.Second, true}, // grace
		{14 * time.Second, 14 * time.Second, false},
	}
	for _, tt := range tests {
		if got := tl.inOutage(base.Add(tt.from), base.Add(tt.to)); got != tt.want {
			t.Errorf("[%s, %s]: %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}
