"""Loading: safe, bounded YAML/JSON reading with every value located (file:line:col)."""
