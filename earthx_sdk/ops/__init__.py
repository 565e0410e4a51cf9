"""Per-pixel ops of the runtime. Each has a numpy reference (`<op>_ref`, the spec) and a native
implementation in `earthx_sdk._C`; the public function takes `impl="auto" | "native" | "ref"`."""
