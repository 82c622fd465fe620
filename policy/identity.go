package policy

import (
	"net/netip"

	"github.com/appfence/appfence/config"
)

// Identity is what an encrypted transport knows of a client beyond its
// address. The zero Identity (plain UDP and TCP) places a client by address
// alone.
type Identity struct {
	// ClientID is the canonical ClientID the client sent (the DoH path
	// /dns-query/{id} or the SNI label under server.tls.server_name), or "".
	ClientID string
	// CertNames name the client's verified certificate: its DNS SANs, its
	// CN and "sha256:" with its hex SHA-256, canonical (lower case). Empty
	// without a verified certificate.
	CertNames []string
}

// identities records the ClientIDs and certificate names of group g.
func (p *Policy) identities(g *Group, gc config.Group) {
	for _, id := range gc.ClientIDs {
		if p.byClientID == nil {
			p.byClientID = map[string]*Group{}
		}
		p.byClientID[id] = g
	}
	for _, n := range gc.ClientCerts {
		if p.byCert == nil {
			p.byCert = map[string]*Group{}
		}
		p.byCert[n] = g
	}
}

// GroupFor returns the group of a client with identity id: the group of
// its verified certificate, else of its ClientID, else of its address
// (GroupOf). A certificate or ClientID that no group names falls back to
// the address, so an unknown device stays under the address rule. A nil id
// is the address alone.
func (p *Policy) GroupFor(client netip.Addr, id *Identity) *Group {
	if id != nil {
		for _, n := range id.CertNames {
			if g, ok := p.byCert[n]; ok {
				return g
			}
		}
		if id.ClientID != "" {
			if g, ok := p.byClientID[id.ClientID]; ok {
				return g
			}
		}
	}
	return p.GroupOf(client)
}

// DecideFor is Decide for a client with identity id (see GroupFor). The
// address must still be in server.allow_clients.
func (p *Policy) DecideFor(client netip.Addr, id *Identity, name string) Decision {
	if !p.allowed.Contains(client) {
		return Decision{Action: ActionRefuse}
	}
	return p.decide(p.GroupFor(client, id), name)
}
