// A CoreDNS with only the plugins the test node's cluster DNS uses. The stock build links every
// plugin (cloud DNS providers included) and takes far longer to compile; here the plugin chain is
// this program's own list, in the order CoreDNS runs them.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// Plugins run in this order for every query; a Corefile may name any subset.
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "cache", "loadbalance", "kubernetes"}
}

func main() {
	coremain.Run()
}
