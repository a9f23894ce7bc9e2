module lethe.dev/services/sharing

go 1.26.8

require (
	lethe.dev/gen v0.0.0
	lethe.dev/platform v0.0.0
)

replace (
	lethe.dev/gen => ../../gen
	lethe.dev/platform => ../../platform
)
