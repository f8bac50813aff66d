"""Small helpers every layer of the runtime shares (time formats, sizes, passwords).

Modules here import nothing else of the runtime but `runtime.errors`, so any
subsystem and the API can use them without creating an import cycle.
"""
