"""`sartd fib`: the routes the speaker learned, installed into the node's kernel.

`plan` decides (pure), `kernel` talks rtnetlink, `follow` follows the speaker's API
(docs/fib.md)."""
