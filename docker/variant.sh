# shellcheck shell=bash disable=SC2034
# The application image's variants; sourced by docker/wheelhouse.sh and docker/images.sh.
# Both variants come from the same docker/Dockerfile, chosen by build arguments:
#
#   IMAGE_VARIANT   extras      pins                   wheelhouse          tag
#   "" (default)    (none)      constraints.txt        .wheelhouse/        <tag>       TensorFlow 2.21, numpy 2
#   tfio            tfio        constraints-tfio.txt   .wheelhouse-tfio/   <tag>-tfio  + tensorflow-io 0.37.1,
#                                                                                      TensorFlow 2.16, numpy 1.26
#
# Sets VARIANT_EXTRAS (comma-separated extras of pyproject.toml), VARIANT_CONSTRAINTS, VARIANT_WHEELHOUSE and
# VARIANT_TAG_SUFFIX from IMAGE_VARIANT; exits 2 on an unknown variant.
IMAGE_VARIANT=${IMAGE_VARIANT:-}
case "$IMAGE_VARIANT" in
    "")
        VARIANT_EXTRAS=""
        VARIANT_CONSTRAINTS=constraints.txt
        VARIANT_WHEELHOUSE=.wheelhouse
        VARIANT_TAG_SUFFIX=""
        ;;
    tfio)
        VARIANT_EXTRAS=tfio
        VARIANT_CONSTRAINTS=constraints-tfio.txt
        VARIANT_WHEELHOUSE=.wheelhouse-tfio
        VARIANT_TAG_SUFFIX=-tfio
        ;;
    *)
        echo "IMAGE_VARIANT must be empty (the default image) or tfio, not '$IMAGE_VARIANT'" >&2
        exit 2
        ;;
esac
