"""GraphQL over the streams: the schema, execution, and the graphql-transport-ws protocol."""
