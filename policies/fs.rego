# Which fs operations the sandbox may perform: the seed's example, in Rego v1, narrowed to a
# sandbox directory that may be read and an "out" directory below it that may also be written.
#
# The supervisor asks data.mcp.fs.allow before every operation. Anything but `true` denies.
# The input:
#
#   operation    "readFile", "writeFile", "appendFile", "readdir", "stat", "mkdir", "rm",
#                "rename", "copyFile" or "exists"
#   path         the path operated on, absolute and normalized ("." and ".." resolved lexically,
#                no trailing "/"); the supervisor then opens it without following symlinks
#                out of the checked directories
#   destination  (rename, copyFile) the target path, absolute and normalized
#   recursive    (mkdir, rm) whether a recursive operation was requested
#   encoding     (readFile) "utf8" or "buffer"
package mcp.fs

default allow := false

sandbox := "/tmp/sandbox"

outbox := "/tmp/sandbox/out"

read_operations := {"readFile", "readdir", "stat", "exists"}

write_operations := {"writeFile", "appendFile", "mkdir", "rm"}

allow if allowed(input)

# The decision as a function of the request, so tests can call it directly (regopy 1.5.2 cannot
# compile `allow with input as ...` when the rule passes input to a function).

# Reads anywhere under the sandbox.
allowed(request) if {
	request.operation in read_operations
	within(request.path, sandbox)
}

# Writes only under the out directory.
allowed(request) if {
	request.operation in write_operations
	within(request.path, outbox)
}

# Copies from anywhere readable into the out directory.
allowed(request) if {
	request.operation == "copyFile"
	within(request.path, sandbox)
	within(request.destination, outbox)
}

# A rename removes its source: both ends must be writable.
allowed(request) if {
	request.operation == "rename"
	within(request.path, outbox)
	within(request.destination, outbox)
}

# `path` is `dir` or below it; a path with "." or ".." components is never within anything
# (the supervisor normalizes paths, this is a second line).
within(path, dir) if {
	path == dir
}

within(path, dir) if {
	startswith(path, concat("", [dir, "/"]))
	not regex.match(`(^|/)\.\.?(/|$)`, path)
}
