coldstart-compiling = ⚙️ Compiling the models for faster drawing: pictures are drawn meanwhile, somewhat slower.
