# Unit tests of fs.rego; tests/policy/test_rego_policies.py runs every test_ rule with the
# server's own evaluator (regopy) and fails unless each is true.
package mcp.fs_test

import data.mcp.fs

test_allows_reading_under_the_sandbox if {
	fs.allowed({"operation": "readFile", "path": "/tmp/sandbox/data.txt", "encoding": "utf8"})
}

test_allows_listing_the_sandbox_itself if {
	fs.allowed({"operation": "readdir", "path": "/tmp/sandbox"})
}

test_allows_stat_and_exists_under_the_sandbox if {
	fs.allowed({"operation": "stat", "path": "/tmp/sandbox/a/b"})
	fs.allowed({"operation": "exists", "path": "/tmp/sandbox/missing"})
}

test_denies_reading_outside_the_sandbox if {
	not fs.allowed({"operation": "readFile", "path": "/etc/passwd"})
}

test_denies_a_sibling_with_the_sandbox_as_prefix if {
	not fs.allowed({"operation": "readFile", "path": "/tmp/sandbox-other/x"})
	not fs.allowed({"operation": "writeFile", "path": "/tmp/sandbox/outside"})
}

test_denies_dot_dot_components if {
	not fs.allowed({"operation": "readFile", "path": "/tmp/sandbox/../../etc/passwd"})
	not fs.allowed({"operation": "writeFile", "path": "/tmp/sandbox/out/../x"})
}

test_allows_writes_under_out if {
	fs.allowed({"operation": "writeFile", "path": "/tmp/sandbox/out/result.json"})
	fs.allowed({"operation": "appendFile", "path": "/tmp/sandbox/out/log.txt"})
	fs.allowed({"operation": "mkdir", "path": "/tmp/sandbox/out/a/b", "recursive": true})
	fs.allowed({"operation": "rm", "path": "/tmp/sandbox/out/a", "recursive": true})
}

test_denies_writes_elsewhere_in_the_sandbox if {
	not fs.allowed({"operation": "writeFile", "path": "/tmp/sandbox/data.txt"})
	not fs.allowed({"operation": "rm", "path": "/tmp/sandbox/data.txt"})
	not fs.allowed({"operation": "mkdir", "path": "/tmp/sandbox/new"})
}

test_allows_copying_from_the_sandbox_into_out if {
	fs.allowed({"operation": "copyFile", "path": "/tmp/sandbox/a.txt", "destination": "/tmp/sandbox/out/a.txt"})
}

test_denies_copying_out_of_out if {
	not fs.allowed({"operation": "copyFile", "path": "/tmp/sandbox/out/a.txt", "destination": "/tmp/sandbox/a.txt"})
	not fs.allowed({"operation": "copyFile", "path": "/etc/shadow", "destination": "/tmp/sandbox/out/s"})
}

test_allows_renaming_within_out_only if {
	fs.allowed({"operation": "rename", "path": "/tmp/sandbox/out/a", "destination": "/tmp/sandbox/out/b"})
	not fs.allowed({"operation": "rename", "path": "/tmp/sandbox/a", "destination": "/tmp/sandbox/out/a"})
	not fs.allowed({"operation": "rename", "path": "/tmp/sandbox/out/a", "destination": "/tmp/a"})
}

test_denies_an_unknown_operation if {
	not fs.allowed({"operation": "chmod", "path": "/tmp/sandbox/out/a"})
}

test_denies_without_a_destination if {
	not fs.allowed({"operation": "copyFile", "path": "/tmp/sandbox/a.txt"})
}
