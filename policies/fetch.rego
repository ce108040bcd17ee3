# Which requests the sandbox's fetch() may make: the seed's example, in Rego v1.
#
# The supervisor asks data.mcp.fetch.allow before every request and before following every
# redirect hop. Anything but `true` (false, undefined, an error) denies. The input:
#
#   operation    always "fetch"
#   url          the full URL string, as requested
#   method       the HTTP method, upper case ("GET", "POST", ...)
#   headers      the request headers after header injection, names lower case
#   url_parsed   {scheme, host, port, path, query}: scheme and host lower case (an IP host in
#                canonical form, IPv6 without brackets); port a number when the URL names one
#                other than the scheme's default, else null; query without the "?"
#   resolved_ip  the IP address the supervisor will connect to: the host's address after DNS
#                resolution, or the literal the URL gave in canonical form ("127.0.0.1" for
#                "2130706433", "0177.0.0.1" or "127.1"). The connection goes to exactly this
#                address, so a decision on it cannot be undone by DNS changing between check
#                and connect. IPv4 is dotted decimal, IPv6 compressed lower case; the broker
#                gives an IPv4-mapped address as the IPv4 address it reaches, and 0.0.0.0 or
#                :: as the loopback address they reach.
package mcp.fetch

default allow := false

# Hosts the sandbox may read from, over HTTPS.
allowed_hosts := {"api.example.com", "api.github.com"}

allow if allowed(input)

# The decision as a function of the request, so tests can call it directly (regopy 1.5.2 cannot
# compile `allow with input as ...` when the rule passes input to a function).
allowed(request) if {
	request.operation == "fetch"
	request.method == "GET"
	request.url_parsed.scheme == "https"
	request.url_parsed.host in allowed_hosts
	object.get(request.url_parsed, "port", null) in {null, 443}
	public_address(request.resolved_ip)
}

# Only public addresses. regopy (rego-cpp) has no net.cidr_contains, and its regex.match costs
# ~70 µs a call, so the ranges are checked on the octets: this host (0/8), private (10/8,
# 172.16/12, 192.168/16), shared (100.64/10), loopback (127/8), link-local (169.254/16),
# multicast and reserved (224/3); and every IPv6 address starting "::" (unspecified, loopback,
# IPv4-mapped and -compatible), unique-local (fc00::/7), link-local (fe80::/10), multicast
# (ff00::/8). Anything that is not an address (a name, a malformed literal) is not public.
public_address(ip) if {
	parts := split(ip, ".")
	octets := [n | some part in parts; n := to_number(part); n >= 0; n <= 255]
	count(parts) == 4
	count(octets) == 4
	not non_public_ipv4(octets)
}

public_address(ip) if {
	contains(ip, ":")
	not non_public_ipv6(lower(ip))
}

non_public_ipv4(o) if o[0] in {0, 10, 127}

non_public_ipv4(o) if {
	o[0] == 169
	o[1] == 254
}

non_public_ipv4(o) if {
	o[0] == 192
	o[1] == 168
}

non_public_ipv4(o) if {
	o[0] == 172
	o[1] >= 16
	o[1] <= 31
}

non_public_ipv4(o) if {
	o[0] == 100
	o[1] >= 64
	o[1] <= 127
}

non_public_ipv4(o) if o[0] >= 224

non_public_ipv6(ip) if startswith(ip, "::")

non_public_ipv6(ip) if substring(ip, 0, 2) in {"fc", "fd", "ff"}

non_public_ipv6(ip) if substring(ip, 0, 3) in {"fe8", "fe9", "fea", "feb"}
