"""The Forge broker: owns PostgreSQL and serves the forge.v1.Broker gRPC API."""
