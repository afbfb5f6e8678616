"""``python -m aurigraph_stream.gql``: print the schema's SDL (docs/schema.graphql)."""

from aurigraph_stream.gql.schema import sdl

print(sdl(), end="")
