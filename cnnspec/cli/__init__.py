"""The command line: `cnnspec validate|explain|schema|build|verify`."""
