cs-compiling = ⏳ Compiling the models: pictures take a little longer until it is done.
