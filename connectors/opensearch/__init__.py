"""Amazon OpenSearch Service and OpenSearch clusters: indexing, search and the synonym package lifecycle."""
