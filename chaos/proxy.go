package chaos

import (
	"context"
	"fmt"
	"io"
	"strings"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// proxies are toxiproxy proxies in this process, one in front of each
// server: the address a server is known by (its entry in -peers) is its
// proxy's, so every message to it, from a peer or a client, goes through
// the proxy, where toxics slow it, cut it up or reset it.
type proxies struct {
	api  *toxiproxy.ApiServer
	list []*toxiproxy.Proxy
}

func newProxies() *proxies {
	return &proxies{api: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.New(io.Discard))}
}

// add starts a proxy listening at listen for upstream.
func (p *proxies) add(name, listen, upstream string) error {
	px := toxiproxy.NewProxy(p.api, name, listen, upstream)
	if err := px.Start(); err != nil {
		return fmt.Errorf("proxy for %s at %s: %w", name, listen, err)
	}
	p.list = append(p.list, px)
	return nil
}

// addr is the address proxy i listens at (its port chosen when it started).
func (p *proxies) addr(i int) string { return p.list[i].Listen }

// toxic adds a toxic to proxy i: kind is toxiproxy's type, stream
// "upstream" (to the server) or "downstream" (its answers), attrs its
// attributes as JSON.
func (p *proxies) toxic(i int, kind, stream, attrs string) error {
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, kind+"_"+stream, kind, stream, attrs)
	_, err := p.list[i].Toxics.AddToxicJson(strings.NewReader(body))
	return err
}

// clearToxics removes every toxic from every proxy.
func (p *proxies) clearToxics() {
	for _, px := range p.list {
		px.Toxics.ResetToxics(context.Background())
	}
}

// stop closes every proxy and its connections.
func (p *proxies) stop() {
	for _, px := range p.list {
		px.Stop()
	}
}
