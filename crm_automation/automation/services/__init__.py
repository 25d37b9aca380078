"""Every write a person or a surface (admin, pages, API) makes: workflows and their versions,
runs (cancel, retry, resume), simulation and impact previews."""
