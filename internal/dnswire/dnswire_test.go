package dnswire

import (
	"testing"

	"github.com/miekg/dns"
)

// TestAppendOPT: the record unpacks, with miekg/dns, to the OPT asked for.
func TestAppendOPT(t *testing.T) {
	for _, tt := range []struct {
		name    string
		payload uint16
		do      bool
		ede     *EDE
	}{
		{"plain", 1232, false, nil},
		{"DO", 4096, true, nil},
		{"stale", 1232, false, &EDE{Code: dns.ExtendedErrorCodeStaleAnswer}},
		{"blocked with text", 1232, true, &EDE{Code: dns.ExtendedErrorCodeBlocked, Text: []byte("blocked: app=tiktok")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A message of a header with ARCOUNT 1, then the record.
			msg := AppendOPT([]byte{0, 1, BitQR >> 8, 0, 0, 0, 0, 0, 0, 0, 0, 1}, tt.payload, tt.do, tt.ede)
			m := new(dns.Msg)
			if err := m.Unpack(msg); err != nil {
				t.Fatal(err)
			}
			opt := m.IsEdns0()
			if opt == nil || opt.UDPSize() != tt.payload || opt.Do() != tt.do || opt.Version() != 0 {
				t.Fatalf("OPT %v", opt)
			}
			if tt.ede == nil {
				if len(opt.Option) != 0 {
					t.Errorf("options %v, want none", opt.Option)
				}
				return
			}
			if len(opt.Option) != 1 {
				t.Fatalf("options %v, want one EDE", opt.Option)
			}
			ede, ok := opt.Option[0].(*dns.EDNS0_EDE)
			if !ok || ede.InfoCode != tt.ede.Code || ede.ExtraText != string(tt.ede.Text) {
				t.Errorf("EDE %v, want %d %q", opt.Option[0], tt.ede.Code, tt.ede.Text)
			}
		})
	}
}

func TestRcodeName(t *testing.T) {
	for rcode, want := range map[int]string{0: "NOERROR", 3: "NXDOMAIN", 16: "BADVERS", 4000: "RCODE4000"} {
		if got := RcodeName(rcode); got != want {
			t.Errorf("RcodeName(%d) = %q, want %q", rcode, got, want)
		}
	}
}
