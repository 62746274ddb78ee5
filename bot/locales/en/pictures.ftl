# Pictures from pictures in Telegram (bot/handlers/pictures.py): redraw, /vary, /mix.

pics-draw-usage =
    ✏️ Say after /draw what the picture should become, for example:
    <code>/draw a watercolor painting --strength 0.6</code>
    Send it as the photo's caption, or as a reply to the photo.

pics-vary-nothing =
    🖼 /vary needs a picture. Send a photo with the caption <code>/vary</code>, or reply <code>/vary</code> to a photo (yours or one of mine).
    In a private chat, just sending a photo makes a variation of it.

pics-mix-nothing =
    🖼 /mix needs pictures. Send an album of 2 to 4 photos with the caption <code>/mix</code> (optionally with a text and <code>--weights 0.3,0.7</code>), or reply <code>/mix in winter</code> to a photo.

pics-album-too-many = 🖼 A mix takes at most { $most } pictures; this album has { $count }. Send an album of 2 to { $most } photos.

pics-album-one = { $command } redraws one picture. Send one photo with it, or caption an album <code>/mix</code> to blend its pictures.

pics-album-hint = To blend these pictures, send them again as an album with the caption <code>/mix</code> (2 to 4 photos). To get a variation of one, send it on its own.

pics-download-failed = 😔 I couldn't get the picture from Telegram. Please send it again.

pics-help =
    <b>Pictures from pictures</b>
    🖌 <b>Redraw</b>: send a photo with the caption <code>/draw a watercolor painting --strength 0.6</code>, or reply with it to a photo (also to one of mine). <code>--strength</code> from 0.05 (barely changes) to 1 (draws anew), default { $strength }; the result keeps the photo's shape unless you give <code>--size</code> or <code>--ar</code>.
    🔁 <b>Variation</b>: send a photo (in a private chat no caption is needed), or reply <code>/vary</code> to one. A text steers it: <code>/vary in winter</code>.
    🔀 <b>Mix</b>: send an album of 2 to 4 photos with the caption <code>/mix</code>, or reply <code>/mix a starry night</code> to a photo. <code>--weights 0.3,0.7</code> gives each picture (then the text) its share; equal by default.
    All the options above work with them, e.g. <code>--seed</code> to repeat a picture.
