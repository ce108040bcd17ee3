# Unit tests of fetch.rego; tests/policy/test_rego_policies.py runs every test_ rule with the
# server's own evaluator (regopy) and fails unless each is true.
package mcp.fetch_test

import data.mcp.fetch

request := {
	"operation": "fetch",
	"url": "https://api.example.com/public/data?page=1",
	"method": "GET",
	"headers": {"accept": "application/json"},
	"url_parsed": {
		"scheme": "https",
		"host": "api.example.com",
		"port": null,
		"path": "/public/data",
		"query": "page=1",
	},
	"resolved_ip": "93.184.215.14",
}

with_url(parts) := object.union(request, {"url_parsed": object.union(request.url_parsed, parts)})

with_address(ip) := object.union(request, {"resolved_ip": ip})

test_allows_get_to_an_allowed_host_over_https if {
	fetch.allowed(request)
}

test_allows_the_explicit_default_port if {
	fetch.allowed(with_url({"port": 443}))
}

test_allows_a_public_ipv6_address if {
	fetch.allowed(with_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c"))
}

test_denies_post if {
	not fetch.allowed(object.union(request, {"method": "POST"}))
}

test_denies_plain_http if {
	not fetch.allowed(with_url({"scheme": "http", "port": 80}))
}

test_denies_a_host_not_on_the_list if {
	not fetch.allowed(with_url({"host": "evil.example.net"}))
}

test_denies_a_lookalike_host if {
	not fetch.allowed(with_url({"host": "api.example.com.evil.net"}))
}

test_denies_another_port if {
	not fetch.allowed(with_url({"port": 8443}))
}

test_denies_an_allowed_host_resolving_to_loopback if {
	not fetch.allowed(with_address("127.0.0.1"))
}

# Comprehensions rather than `every`: regopy 1.5.2 gets `every x in xs { not f({... x ...}) }`
# wrong (undefined or "Not a term"). A failure shows which addresses were misjudged.
test_denies_private_link_local_and_unspecified_addresses if {
	addresses := ["10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "224.0.0.1"]
	allowed := [ip | some ip in addresses; fetch.allowed(with_address(ip))]
	allowed == []
}

test_denies_ipv6_loopback_mapped_and_local_addresses if {
	addresses := ["::1", "::", "::ffff:127.0.0.1", "::ffff:7f00:1", "::127.0.0.1", "fd00::1", "fc00::1", "fe80::1", "FE80::1", "febf::1", "ff02::1"]
	allowed := [ip | some ip in addresses; fetch.allowed(with_address(ip))]
	allowed == []
}

test_allows_public_neighbours_of_private_ranges if {
	addresses := ["172.32.0.1", "172.15.0.1", "11.0.0.1", "192.169.0.1", "100.63.0.1", "100.128.0.1", "223.255.255.1", "2001:4860:4860::8888", "fec0::1"]
	denied := [ip | some ip in addresses; not fetch.allowed(with_address(ip))]
	denied == []
}

test_denies_what_is_not_an_address if {
	addresses := ["", "api.example.com", "1.2.3", "1.2.3.4.5", "1.2.3.256", "a.b.c.d", "1.2.3.-1"]
	allowed := [ip | some ip in addresses; fetch.allowed(with_address(ip))]
	allowed == []
}

test_denies_without_a_resolved_address if {
	not fetch.allowed(object.remove(request, {"resolved_ip"}))
}

test_denies_another_operation if {
	not fetch.allowed(object.union(request, {"operation": "readFile"}))
}
