"""The search pipeline: the lake's current state indexed into OpenSearch, synonym-aware.

`docs` and `tables` build the 360° people documents, `index` and `versions` index them with
external versions from source time, `query` searches them; `synonyms`, `synonyms_store` and
`synonym_publish` turn the synonyms table into the analyzers' dictionary; `config` is the
`[search]` section of the configuration.
"""
