"""Code the Forge services share (broker, workerd, gateway); the client never imports it."""
