"""Download the Open Images boxes and images of chosen classes; see docs/open_images_downloader.md.

Example: python open_images_downloader.py --root ~/data/open_images --class_names "Handgun,Shotgun" --num_workers 20
"""
import sys

from vision.cli.open_images_downloader import main

if __name__ == "__main__":
    sys.exit(main())
