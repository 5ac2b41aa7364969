"""Programs the harness builds for devices (ARM64 userland, llama.cpp, the TVM kit), cached by
content hash."""
